"""Ray actors: thin shells that host raykernel's plain classes in their own processes."""
