"""Every environment variable settings.py reads is in .env.example and the README."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _read_names():
    source = (ROOT / "config" / "settings.py").read_text()
    names = set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    names |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]+)"', source))
    return names


def test_settings_read_a_known_set():
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "JWT_SECRET_KEY", "WECHATPAY_MCH_ID"} <= _read_names()


def test_every_setting_is_in_env_example():
    example = (ROOT / ".env.example").read_text()
    missing = sorted(n for n in _read_names() if not re.search(rf"^#? ?{n}=", example, re.M))
    assert missing == []


def test_every_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = sorted(n for n in _read_names() if n not in readme)
    assert missing == []
