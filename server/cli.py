"""The ``sanke`` command: serve, migrate, demo data, timetable import."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scheduler import clock
from server.core.config import get_settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.main import create_app

    settings = get_settings()
    if args.demo:
        from server.demo import load_demo

        load_demo(settings, if_empty=True)
    app = create_app(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"SanKe 三课 正在运行: http://{host}:{port}/  (API 文档: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")
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


def _import_timetable(args: argparse.Namespace) -> int:
    from scheduler.timetable_import import run_cli_import

    return run_cli_import(get_settings(), Path(args.file), commit=not args.dry_run, actor_username=args.as_user)


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

    p = sub.add_parser("import-timetable", help="从 CSV / XLSX 导入课表")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="只检查，不写入")
    p.add_argument("--as-user", default=None, help="以哪个管理员账号的名义导入（默认：第一个系统管理员）")
    p.set_defaults(func=_import_timetable)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
