"""Auth request and response schemas, named by direction (In, Out, Args)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from quantdesk.schemas import PageArgs, UTCDateTime

USERNAME = validate.Regexp(
    r"^[A-Za-z0-9_.-]{3,32}$",
    error="3 to 32 letters, digits, '_', '.' or '-'.",
)
PASSWORD = validate.Length(min=1, max=128)
PHONE = validate.Regexp(r"^\+?[0-9 ()-]{5,20}$", error="A phone number, e.g. +86 138 0000 0000.")


class UserOut(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    email = fields.String(required=True)
    full_name = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    language = fields.String()
    roles = fields.List(fields.String(), attribute="role_names", required=True)
    is_active = fields.Boolean()
    created_at = UTCDateTime(required=True)
    updated_at = UTCDateTime()


class RegisterIn(Schema):
    username = fields.String(required=True, validate=USERNAME)
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=PASSWORD)


class LoginIn(Schema):
    """Log in with `username` or `email` (either may hold either) and `password`."""

    username = fields.String(validate=validate.Length(min=1, max=254))
    email = fields.String(validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True, validate=PASSWORD)

    @validates_schema
    def _one_identifier(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("username") and not data.get("email"):
            raise ValidationError("Give a username or an email.", field_name="username")


class TokensOut(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds"})
    refresh_expires_in = fields.Integer(required=True, metadata={"description": "seconds"})
    user = fields.Nested(UserOut, required=True)


class RefreshOut(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)
    refresh_expires_in = fields.Integer(required=True)


class MessageOut(Schema):
    message = fields.String(required=True)


class ProfileUpdateIn(Schema):
    full_name = fields.String(allow_none=True, validate=validate.Length(max=100))
    avatar_url = fields.Url(
        allow_none=True, schemes={"http", "https"}, validate=validate.Length(max=500)
    )
    phone = fields.String(allow_none=True, validate=PHONE)
    email = fields.Email(validate=validate.Length(max=254))
    language = fields.String(validate=validate.OneOf(["zh-CN", "en"]))


class ChangePasswordIn(Schema):
    old_password = fields.String(required=True, load_only=True, validate=PASSWORD)
    new_password = fields.String(required=True, load_only=True, validate=PASSWORD)


class ResetPasswordIn(Schema):
    """Either `{email}` to ask for a reset mail, or `{token, new_password}` to use one."""

    email = fields.Email(validate=validate.Length(max=254))
    token = fields.String(validate=validate.Length(min=10, max=200))
    new_password = fields.String(load_only=True, validate=PASSWORD)

    @validates_schema
    def _one_form(self, data: dict[str, Any], **_: Any) -> None:
        asks = "email" in data
        uses = "token" in data or "new_password" in data
        if asks == uses:
            raise ValidationError("Send either {email} or {token, new_password}.", "_schema")
        if uses and not ("token" in data and "new_password" in data):
            missing = "token" if "token" not in data else "new_password"
            raise ValidationError("Missing data for required field.", field_name=missing)


class UserListArgs(PageArgs):
    q = fields.String(validate=validate.Length(max=100))


class AuditListArgs(PageArgs):
    event = fields.String(
        validate=validate.Length(min=1, max=50), metadata={"description": "only this event"}
    )
    user_id = fields.Integer(
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "only events about this account"},
    )


class AuditEventOut(Schema):
    id = fields.Integer(required=True)
    event = fields.String(required=True)
    user_id = fields.Integer(allow_none=True)
    actor_id = fields.Integer(allow_none=True)
    ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    details = fields.Dict(keys=fields.String(), required=True)
    created_at = UTCDateTime(required=True)


class AdminUserUpdateIn(Schema):
    is_active = fields.Boolean()
    roles = fields.List(
        fields.String(validate=validate.Length(min=1, max=50)), validate=validate.Length(max=20)
    )
