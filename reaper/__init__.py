"""reaper's one command and what runs beside the function: companion services, operator and dev tools."""
