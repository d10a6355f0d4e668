"""Developer tools that never ship in the image: the CloudDC emulator, the demo, local process control."""
