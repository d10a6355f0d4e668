"""Tests of one module in-process: no child process, no network beyond an in-process loopback socket."""
