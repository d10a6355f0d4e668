"""On-demand benchmarks (``make bench``): what reaper costs next to the alternatives, on loopback."""
