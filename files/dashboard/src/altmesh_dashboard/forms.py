"""The base class of every HTML form: Flask-WTF's `FlaskForm`, with its type.

Flask-WTF ships no type information, so to a type checker its `FlaskForm` is `Any` and every
form built on it loses the field types WTForms' stubs give. For the checker this module declares
the part of `FlaskForm` the views use on top of WTForms' typed `Form`; at run time it is
Flask-WTF's class itself (CSRF token, request data, `validate_on_submit`).

`SelectField(choices=[...])` takes plain values (each its own label), the form WTForms 3.3
recommends (it deprecates the tuples); the types-WTForms stubs, written for 3.2, accept only
tuples, hence the `type: ignore[arg-type]` on those lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from markupsafe import Markup
    from wtforms import Form

    class FlaskForm(Form):
        def is_submitted(self) -> bool: ...

        def validate_on_submit(
            self, extra_validators: Mapping[str, Sequence[Any]] | None = None
        ) -> bool: ...

        def hidden_tag(self, *fields: object) -> Markup: ...

else:
    from flask_wtf import FlaskForm

__all__ = ["FlaskForm"]
