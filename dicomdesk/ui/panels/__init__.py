"""The window's panels, one per thing a user does (ARCHITECTURE "ui/")."""
