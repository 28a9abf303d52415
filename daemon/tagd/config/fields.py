"""Field types of the settings: strict scalars and ranges with tagd's own messages.

Strict, because a config file is written by hand: "8" where a number belongs,
or 1 where a switch belongs, is a typo to point at, not a value to guess from.
The one widening kept is int -> float (``threshold = 1`` is 1.0), as TOML
writers expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, Strict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

# Every settings section: an unknown key is an error, never silently dropped.
SECTION = ConfigDict(extra="forbid")

Bool = Annotated[bool, Strict()]
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Str = Annotated[str, Strict()]

# The error type a Range reports; tagd.config.errors words it.
RANGE_ERROR = "tagd_range"


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of a number, None for an open side.

    nan is out of every range: it compares False with everything, so a plain
    ``lo <= x <= hi`` would let it through and, as a threshold, it would then
    silently drop every detection.
    """

    lo: float | None = None
    hi: float | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if self.lo is not None:
            json_schema["minimum"] = self.lo
        if self.hi is not None:
            json_schema["maximum"] = self.hi
        return json_schema

    def check(self, value: float) -> float:
        if (
            math.isnan(value)
            or (self.lo is not None and value < self.lo)
            or (self.hi is not None and value > self.hi)
        ):
            raise PydanticCustomError(RANGE_ERROR, "must be {allowed}", {"allowed": self.words()})
        return value

    def words(self) -> str:
        """The bounds as the error messages say them ("between 0.0 and 1.0")."""
        if self.lo is not None and self.hi is not None:
            return f"between {self.lo} and {self.hi}"
        if self.lo is not None:
            return f"at least {self.lo}"
        return f"at most {self.hi}" if self.hi is not None else "a number"
