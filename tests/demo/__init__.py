"""`make demo`: the whole stream on Debian's kernel in qemu (the story is in flow.py).

The host runs the patch service and a simulated fleet; the VM runs the client
snap's code and the kernel whose outcomes the rollout engine acts on.
"""
