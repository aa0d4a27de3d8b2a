"""One exception type for problems the user can fix; the CLI prints these without a traceback."""


class DistillError(Exception):
    pass
