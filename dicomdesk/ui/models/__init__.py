"""Qt item models of the window: query results tree, transfer queue, association log, archive."""
