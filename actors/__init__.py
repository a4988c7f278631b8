"""The session actor's process: the Ray actor classes and everything that runs beside them (the
session host, its run book, the kernel client, forks, the store of snapshots and checkpoints,
the installer, the egress proxy, environments, code mode's queue, the memory guard). Nothing
here imports the MCP front end."""
