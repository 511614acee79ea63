"""The ``sanke`` command: serve, migrate, demo data, first admin, timetable import, the stream links' secret."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from scheduler import clock
from server.core.config import Settings, get_settings

MIN_ADMIN_PASSWORD = 10
"""The first admin's password: at least this long, and three kinds of characters."""

_COMMON_PASSWORDS = {"sanke@2026", "password", "password1", "password123", "admin@123", "admin123456",
                     "qwerty123", "1234567890", "12345678910", "abc@123456", "p@ssw0rd123"}


def serve_settings(args: argparse.Namespace) -> Settings:
    """The settings ``sanke serve`` runs with: ``--host``/``--port`` replace ``SANKE_HOST``/``SANKE_PORT``.

    The listen address decides the media's default ICE addresses (see ``Settings.ice_strings``), so it
    goes into the settings rather than only to uvicorn.
    """
    settings = get_settings()
    update = {key: value for key, value in (("host", args.host), ("port", args.port)) if value}
    return settings.model_copy(update=update) if update else settings


def _serve(args: argparse.Namespace) -> int:
    from media.ice import is_loopback_host
    from server.main import create_app
    from server.serving import serve

    settings = serve_settings(args)
    try:
        settings.ice_policy()  # ICE/TURN settings: a clear message, not a traceback (create_app checks again)
    except ValueError as exc:
        print(f"配置错误 / configuration error: {exc}", file=sys.stderr)
        return 2
    if args.demo:
        from server.demo import load_demo

        load_demo(settings, if_empty=True)
    app = create_app(settings, settle_gc=True)
    host, port = settings.host, settings.port
    shown = f"[{host}]" if ":" in host else host
    print(f"SanKe 三课 正在运行: http://{shown}:{port}/  (API 文档: http://{shown}:{port}/docs)")
    if is_loopback_host(host):
        print("只有本机可以访问（音视频也只走本机回环地址）；让其他电脑接入请设置 SANKE_HOST，"
              "见 docs/operations.md。")
    sys.stdout.flush()
    serve(app, host=host, port=port, log_level="info", on_term=app.state.drain)
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    from server.core.migrate import upgrade

    settings = get_settings()
    settings.ensure_data_dir()
    upgrade(settings.effective_database_url)
    print(f"数据库已迁移到最新版本: {settings.effective_database_url}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from server.demo import load_demo

    load_demo(get_settings(), if_empty=not args.force)
    return 0


def weak_password_reason(username: str, password: str) -> str | None:
    """Why ``password`` is too weak for an admin (zh-CN), or None when it will do."""
    if len(password) < MIN_ADMIN_PASSWORD:
        return f"密码太短：管理员密码至少 {MIN_ADMIN_PASSWORD} 位"
    if len(password) > 128:
        return "密码不能超过 128 位"
    if password.lower() in _COMMON_PASSWORDS:
        return "密码太弱：这是公开的演示密码或常见密码，请换一个"
    if username and username.lower() in password.lower():
        return "密码太弱：不能包含用户名"
    kinds = sum((any(c.islower() for c in password), any(c.isupper() for c in password),
                 any(c.isdigit() for c in password), any(not c.isalnum() for c in password)))
    if kinds < 3:
        return "密码太弱：请至少使用大写字母、小写字母、数字、符号中的三类"
    return None


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        print("没有终端可以输入密码：请用 --password-stdin 从标准输入读入。", file=sys.stderr)
        return None
    first = getpass.getpass("密码：")
    if getpass.getpass("再输入一次：") != first:
        print("两次输入的密码不一致，未创建管理员。", file=sys.stderr)
        return None
    return first


def _create_admin(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from scheduler.access import Scope
    from scheduler.directory import create_user
    from scheduler.errors import SchedulerError
    from scheduler.models import Role, User
    from server.core.db import session_scope
    from server.core.migrate import migrated_database
    from server.core.security import hash_password

    with migrated_database(get_settings()) as factory:
        with factory() as session:
            if session.scalar(select(User.id).where(User.username == args.username.strip())) is not None:
                print(f"无法创建管理员：用户名“{args.username.strip()}”已存在。", file=sys.stderr)
                return 1
        password = _read_password(args)
        if password is None:
            return 1
        reason = weak_password_reason(args.username.strip(), password)
        if reason:
            print(f"无法创建管理员：{reason}。", file=sys.stderr)
            return 1
        # No one signs in yet: the command acts as the system (the audit entry has no actor).
        system = Scope(user_id=None, role=Role.admin, region_path=None, school_id=None,  # type: ignore[arg-type]
                       classroom_id=None, everywhere=True)
        try:
            with session_scope(factory) as session:
                user = create_user(session=session, scope=system, username=args.username,
                                   display_name=args.name or args.username, password=password, role=Role.admin,
                                   hasher=hash_password)
                username, name = user.username, user.display_name
        except SchedulerError as exc:
            print(f"无法创建管理员：{exc.message}。", file=sys.stderr)
            return 1
    print(f"已创建系统管理员 {username}（{name}），可以登录了。")
    return 0


def _import_timetable(args: argparse.Namespace) -> int:
    from scheduler.timetable_import import run_cli_import

    return run_cli_import(get_settings(), Path(args.file), commit=not args.dry_run, actor_username=args.as_user)


def _hls_secret(_args: argparse.Namespace) -> int:
    from server.core.hls_sign import link_secret

    print(link_secret(get_settings().effective_secret_key()))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    clock.configure(get_settings().timezone)
    parser = argparse.ArgumentParser(prog="sanke", description="SanKe 三课：三个课堂平台")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="迁移数据库并启动服务")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--demo", action="store_true", help="数据库为空时先载入演示数据")
    p.set_defaults(func=_serve)

    p = sub.add_parser("migrate", help="把数据库迁移到最新版本")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("demo", help="载入演示数据（一个市、三个区县、一学期课表）")
    p.add_argument("--force", action="store_true", help="即使数据库已有数据也载入")
    p.set_defaults(func=_demo)

    p = sub.add_parser("create-admin", help="创建系统管理员（新部署的第一个账号）")
    p.add_argument("username", help="用户名（3–64 位字母、数字或 _ . @ -）")
    p.add_argument("--name", default=None, help="姓名（默认同用户名）")
    p.add_argument("--password-stdin", action="store_true", help="从标准输入读入密码（一行），不提示")
    p.set_defaults(func=_create_admin)

    p = sub.add_parser("import-timetable", help="从 CSV / XLSX 导入课表")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="只检查，不写入")
    p.add_argument("--as-user", default=None, help="以哪个管理员账号的名义导入（默认：第一个系统管理员）")
    p.set_defaults(func=_import_timetable)

    p = sub.add_parser("hls-secret", help="打印直播链接的签名密钥（供 nginx 等源站校验直播链接，见 docs/operations.md）")
    p.set_defaults(func=_hls_secret)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
