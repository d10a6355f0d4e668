"""A CloudDC emulator (design §8): the documented API subset with a real state machine and faults."""
