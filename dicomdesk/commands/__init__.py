"""One module per ``dicomdesk`` sub-command (argument parsing and printing only)."""
