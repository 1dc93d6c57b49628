"""Knowledge about QEMU itself: accelerators and the workarounds its versions need."""
