"""A JSON Schema whose jsonschema validator is built on first use. Nearly every instance kcr checks is
found valid by the schema's compiled predicate (`fastschema`), and jsonschema is then never asked: a
run whose files are valid needs none of it, and importing it (with referencing, attrs, rpds and the
bundled meta-schemas) was a sixth of a small plan's CPU. jsonschema is imported when an instance is
not certainly valid, which is when its errors are to be worded."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeAlias

    import jsonschema
    import jsonschema.protocols

    Validator: TypeAlias = "SchemaValidator | jsonschema.protocols.Validator"  # what the checks accept


class SchemaValidator:
    """What kcr asks of a jsonschema validator (`schema`, `iter_errors`, `is_valid`); the class is the one
    `$schema` names, draft 2020-12 when it names none (or one jsonschema does not know), as
    `validator_for(schema, default=Draft202012Validator)` chooses, and without a format checker."""

    format_checker = None  # as jsonschema's validators are built here: `format` is an annotation

    def __init__(self, schema: Mapping[str, Any] | bool) -> None:
        self.schema = schema

    def __repr__(self) -> str:
        return f"SchemaValidator({self.schema!r})"

    @cached_property
    def built(self) -> jsonschema.protocols.Validator:
        """The jsonschema validator, built (and jsonschema imported) on first use."""
        import jsonschema

        cls = jsonschema.validators.validator_for(self.schema, default=jsonschema.Draft202012Validator)
        return cls(self.schema)

    def iter_errors(self, instance: Any) -> Iterator[jsonschema.ValidationError]:
        return self.built.iter_errors(instance)

    def is_valid(self, instance: Any) -> bool:
        return self.built.is_valid(instance)
