"""A plugin with a misspelled hook: loading it must fail loudly."""

from raykernel.hookspecs import hookimpl


@hookimpl
def before_exectue(session_id, code):  # the typo is the point
    pass
