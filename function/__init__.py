"""reaper: delete expired CloudDC bare-metal instances and follow each delete with delayed self-events."""
