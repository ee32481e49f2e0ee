"""The one error a manifest or area file is refused with; its own module so that the command
line can catch it without importing what reads the files."""


class InvalidImport(ValueError):
    """A file that cannot be imported; ``problems`` says every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
