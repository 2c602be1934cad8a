"""The one exception type for user errors (bad files, bad fields, bad shapes).

The CLI turns a :class:`SparsesimError` into one line and exit status 2; anything else is a bug.
"""

from __future__ import annotations


class SparsesimError(ValueError):
    """A user error, located by file, layer and field where they are known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        layer: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.layer = layer
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(f"file {self.file}")
        if self.layer:
            where.append(f"layer {self.layer!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return (", ".join(where) + ": " + self.message) if where else self.message

    def located(
        self, *, file: str | None = None, layer: str | None = None, field: str | None = None
    ) -> SparsesimError:
        """The same error with missing location parts filled in (outer callers know the file)."""
        return SparsesimError(
            self.message,
            file=self.file or file,
            layer=self.layer or layer,
            field=self.field or field,
        )
