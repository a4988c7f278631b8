"""Sessions, seen from the front end: the router (session table and one run at a time per
session), the typed handle over each session actor, lifecycle, health, state moves, file
operations on a session's node, placement, the warm pool, nodes and the Ray runtime."""
