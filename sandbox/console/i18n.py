"""The console's words, in simplified Chinese (the default) and English.

Keys are the Chinese-independent names used by the templates; every key exists in both
languages (a test keeps them in step)."""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("zh", "en")
DEFAULT = "zh"

MESSAGES: dict[str, dict[str, str]] = {
    "zh": {
        "app.name": "公共数据沙箱",
        "app.tagline": "可用不可见：在受控环境中分析公共数据，只带走经披露控制的汇总结果",
        "nav.catalog": "数据目录",
        "nav.fees": "收费标准",
        "nav.register": "公示",
        "nav.log": "存证日志",
        "nav.signin": "登录",
        "nav.signout": "退出",
        "nav.language": "English",
        "nav.home": "首页",
        "signin.title": "登录",
        "signin.token": "API 令牌",
        "signin.token.help": "由数据局发放，以 sbx_ 开头。令牌只用于本次登录，不会保存在浏览器中。",
        "signin.submit": "登录",
        "signin.signed_as": "当前用户",
        "catalog.title": "数据目录",
        "catalog.search": "搜索",
        "catalog.search.placeholder": "名称或标题",
        "catalog.department": "部门",
        "catalog.level": "分级",
        "catalog.all": "全部",
        "catalog.filter": "筛选",
        "catalog.empty": "没有符合条件的数据集。",
        "catalog.rows": "行数",
        "catalog.columns": "字段",
        "dataset.dictionary": "数据字典",
        "dataset.column": "字段名",
        "dataset.type": "类型",
        "dataset.role": "角色",
        "dataset.bounds": "取值范围",
        "dataset.no_values": "目录只公开元数据，从不显示任何数据值。",
        "role.identifier": "标识",
        "role.quasi_identifier": "准标识",
        "role.attribute": "属性",
        "role.sensitive": "敏感",
        "error.title": "出错了",
        "error.back": "返回",
        "error.signin_needed": "请先登录。",
        "footer.offline": "本控制台的所有资源均由本服务提供，无需访问互联网。",
    },
    "en": {
        "app.name": "Public Data Sandbox",
        "app.tagline": "Usable but invisible: analyse public data in a controlled place and "
        "take away only disclosure-controlled aggregates",
        "nav.catalog": "Catalog",
        "nav.fees": "Fees",
        "nav.register": "Public register",
        "nav.log": "Log",
        "nav.signin": "Sign in",
        "nav.signout": "Sign out",
        "nav.language": "中文",
        "nav.home": "Home",
        "signin.title": "Sign in",
        "signin.token": "API token",
        "signin.token.help": "Issued by the bureau, starting with sbx_. It is used for this "
        "sign-in only and never stored in the browser.",
        "signin.submit": "Sign in",
        "signin.signed_as": "Signed in as",
        "catalog.title": "Data catalog",
        "catalog.search": "Search",
        "catalog.search.placeholder": "Name or title",
        "catalog.department": "Department",
        "catalog.level": "Level",
        "catalog.all": "All",
        "catalog.filter": "Filter",
        "catalog.empty": "No dataset matches.",
        "catalog.rows": "Rows",
        "catalog.columns": "Columns",
        "dataset.dictionary": "Data dictionary",
        "dataset.column": "Column",
        "dataset.type": "Type",
        "dataset.role": "Role",
        "dataset.bounds": "Range",
        "dataset.no_values": "The catalog publishes metadata only, never a data value.",
        "role.identifier": "identifier",
        "role.quasi_identifier": "quasi-identifier",
        "role.attribute": "attribute",
        "role.sensitive": "sensitive",
        "error.title": "Something went wrong",
        "error.back": "Back",
        "error.signin_needed": "Please sign in first.",
        "footer.offline": "Every resource of this console is served by this service; no "
        "internet access is needed.",
    },
}


def translator(lang: str) -> Callable[..., str]:
    words = MESSAGES[lang if lang in MESSAGES else DEFAULT]

    def t(key: str, **values: object) -> str:
        text = words.get(key) or MESSAGES[DEFAULT].get(key) or key
        return text.format(**values) if values else text

    return t
