"""Auth endpoints (API.md "Auth") and the admin's user management; thin: parse, call, serialise."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask_smorest import Api

from quantdesk.auth import permissions, service
from quantdesk.auth.schemas import (
    AdminUserUpdateIn,
    AuditEventOut,
    AuditListArgs,
    ChangePasswordIn,
    LoginIn,
    MessageOut,
    ProfileUpdateIn,
    RefreshOut,
    RegisterIn,
    ResetPasswordIn,
    TokensOut,
    UserListArgs,
    UserOut,
)
from quantdesk.auth.tokens import (
    client_info,
    current_claims,
    current_user,
    issue_tokens,
    login_required,
    permission_required,
)
from quantdesk.extensions import current_extensions
from quantdesk.mail import deliver_outbox_email
from quantdesk.openapi import BEARER, ApiBlueprint
from quantdesk.ratelimit import auth_rate_limited
from quantdesk.schemas import page_of, paginate
from quantdesk.tasks import BROKER_ERRORS
from quantdesk.web import requires_json

log = logging.getLogger(__name__)

blp = ApiBlueprint("auth", __name__, url_prefix="/api/auth", description="Accounts and tokens")
admin_blp = ApiBlueprint(
    "admin", __name__, url_prefix="/api/admin", description="User administration (admin only)"
)


@blp.post("/register")
@auth_rate_limited
@requires_json
@blp.arguments(RegisterIn)
@blp.response(201, UserOut)
def register(body: dict[str, Any]) -> Any:
    """Create an account with the role `user`."""
    ext = current_extensions()
    return service.register(
        ext.db.session,
        settings=ext.settings,
        username=body["username"],
        email=body["email"],
        password=body["password"],
        client=client_info(),
    )


@blp.post("/login")
@auth_rate_limited
@requires_json
@blp.arguments(LoginIn)
@blp.response(200, TokensOut)
def login(body: dict[str, Any]) -> Any:
    """Exchange a username or email and password for an access and a refresh token."""
    ext = current_extensions()
    session, client = ext.db.session, client_info()
    user = service.authenticate(
        session,
        settings=ext.settings,
        identifier=body.get("username") or body["email"],
        password=body["password"],
        client=client,
    )
    grant = service.start_session(session, settings=ext.settings, user=user, client=client)
    return issue_tokens(ext.settings, grant)


@blp.post("/refresh")
@auth_rate_limited
@login_required(refresh=True)
@blp.response(200, RefreshOut)
@blp.doc(security=BEARER, description="Send the refresh token as the bearer token.")
def refresh() -> Any:
    """Rotate the refresh token: a new access and refresh token; the old refresh token dies."""
    ext = current_extensions()
    claims = current_claims()
    grant = service.rotate_refresh(
        ext.db.session,
        settings=ext.settings,
        keystore=ext.keystore,
        user=current_user(),
        family_id=str(claims.get("fam", "")),
        refresh_jti=claims["jti"],
        client=client_info(),
    )
    return issue_tokens(ext.settings, grant)


@blp.post("/logout")
@login_required()
@blp.response(200, MessageOut)
@blp.doc(security=BEARER)
def logout() -> Any:
    """Revoke this access token and the refresh token of the same login."""
    ext = current_extensions()
    claims = current_claims()
    service.logout(
        ext.db.session,
        keystore=ext.keystore,
        user=current_user(),
        family_id=claims.get("fam"),
        access_jti=claims["jti"],
        access_expires_at=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
        client=client_info(),
    )
    return {"message": "Logged out."}


@blp.get("/profile")
@login_required()
@blp.response(200, UserOut)
@blp.doc(security=BEARER)
def get_profile() -> Any:
    """The logged-in user's profile."""
    return current_user()


@blp.put("/profile")
@login_required()
@requires_json
@blp.arguments(ProfileUpdateIn)
@blp.response(200, UserOut)
@blp.doc(security=BEARER)
def update_profile(body: dict[str, Any]) -> Any:
    """Change some of full_name, avatar_url, phone, email, language."""
    return service.update_profile(
        current_extensions().db.session, user=current_user(), changes=body
    )


@blp.post("/change-password")
@login_required()
@requires_json
@blp.arguments(ChangePasswordIn)
@blp.response(200, MessageOut)
@blp.doc(security=BEARER)
def change_password(body: dict[str, Any]) -> Any:
    """Change the password; every other login session of the account is revoked."""
    ext = current_extensions()
    revoked = service.change_password(
        ext.db.session,
        settings=ext.settings,
        keystore=ext.keystore,
        user=current_user(),
        old_password=body["old_password"],
        new_password=body["new_password"],
        current_family=current_claims().get("fam"),
        client=client_info(),
    )
    return {"message": f"Password changed; {revoked} other session(s) logged out."}


@blp.post("/reset-password")
@auth_rate_limited
@requires_json
@blp.arguments(ResetPasswordIn)
@blp.response(200, MessageOut)
@blp.alt_response(202, schema=MessageOut, description="Reset mail queued (for any email)")
def reset_password(body: dict[str, Any]) -> Any:
    """`{email}`: mail a single-use reset token (202 always). `{token, new_password}`: use it."""
    ext = current_extensions()
    session, client = ext.db.session, client_info()
    if "email" in body:
        email_id = service.request_password_reset(
            session, settings=ext.settings, email=body["email"], client=client
        )
        if email_id is not None:
            try:
                ext.tasks.submit(deliver_outbox_email, email_id)
            except BROKER_ERRORS as exc:
                # Still 202: a 503 here, and only for known emails, would tell which exist. The
                # mail stays in the outbox (status pending); the user can ask again.
                log.warning("reset mail %s not queued, the broker is down: %s", email_id, exc)
        return {"message": "If an account has this email, a reset mail is on its way."}, 202
    service.reset_password(
        session,
        settings=ext.settings,
        keystore=ext.keystore,
        token=body["token"],
        new_password=body["new_password"],
        client=client,
    )
    return {"message": "Password reset; log in with the new password."}


@admin_blp.get("/users")
@permission_required(permissions.USERS_READ)
@admin_blp.arguments(UserListArgs, location="query")
@admin_blp.response(200, page_of(UserOut))
@admin_blp.doc(security=BEARER)
def list_users(args: dict[str, Any]) -> Any:
    """All accounts, newest first; `q` matches username or email."""
    session = current_extensions().db.session
    stmt = service.list_users(session, query=args.get("q"))
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


@admin_blp.patch("/users/<int:user_id>")
@permission_required(permissions.USERS_MANAGE)
@requires_json
@admin_blp.arguments(AdminUserUpdateIn)
@admin_blp.response(200, UserOut)
@admin_blp.doc(security=BEARER)
def update_user(body: dict[str, Any], user_id: int) -> Any:
    """Set a user's roles or (de)activate the account; audited."""
    ext = current_extensions()
    return service.admin_update_user(
        ext.db.session,
        keystore=ext.keystore,
        actor=current_user(),
        user_id=user_id,
        roles=body.get("roles"),
        is_active=body.get("is_active"),
        client=client_info(),
    )


@admin_blp.get("/audit")
@permission_required(permissions.AUDIT_READ)
@admin_blp.arguments(AuditListArgs, location="query")
@admin_blp.response(200, page_of(AuditEventOut))
@admin_blp.doc(security=BEARER)
def list_audit(args: dict[str, Any]) -> Any:
    """The audit log (log-ins, password and role changes ...), newest first."""
    session = current_extensions().db.session
    stmt = service.list_audit_events(session, event=args.get("event"), user_id=args.get("user_id"))
    return paginate(session, stmt, page=args["page"], per_page=args["per_page"])


def register_routes(api: Api) -> None:
    api.register_blueprint(blp)
    api.register_blueprint(admin_blp)
