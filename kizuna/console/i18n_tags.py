"""Texts of tags put on by the bot and in bulk (a segment's page, the keyword rule form, the
timeline): Japanese first, English beside it. Joined into `i18n.MESSAGES` like i18n_shop.py."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    # a segment's page: 「このセグメントにタグを付ける / 外す」
    "segments.tags": ("このセグメントにタグを付ける / 外す", "Tag or untag this segment"),
    "segments.tags.help": (
        "いま該当するお客様全員に、タグをまとめて付けたり外したりします。実行前に人数を確認できます。",
        "Add a tag to, or remove it from, every customer in the segment now. You see how many first.",
    ),
    "segments.tags.tag": ("タグ（例: セール関心）", "Tag (e.g. sale interest)"),
    "segments.tags.action": ("操作", "Action"),
    "segments.tags.action.add": ("付ける", "Add"),
    "segments.tags.action.remove": ("外す", "Remove"),
    "segments.tags.check": ("人数を確認", "Check"),
    "segments.tags.confirm.add": (
        "該当{matched}人のうち{changed}人にタグ「{tag}」を付けます（すでに付いている人、タグが上限の50個ある人を除く）。",
        "This adds the tag “{tag}” to {changed} of the {matched} customers (not to those who have it or have 50 tags).",
    ),
    "segments.tags.confirm.remove": (
        "該当{matched}人のうち{changed}人からタグ「{tag}」を外します。",
        "This removes the tag “{tag}” from {changed} of the {matched} customers.",
    ),
    "segments.tags.run.add": ("{changed}人に付ける", "Add to {changed}"),
    "segments.tags.run.remove": ("{changed}人から外す", "Remove from {changed}"),
    "segments.tags.cancel": ("やめる", "Cancel"),
    "segments.tags.invalid": ("タグを確認してください", "Check the tag"),
    "segments.tags.done.add": ("{count}人にタグ「{tag}」を付けました。", "Tagged {count} customers “{tag}”."),
    "segments.tags.done.remove": ("{count}人からタグ「{tag}」を外しました。", "Removed “{tag}” from {count} customers."),
    # the keyword rule form
    "rule.field.add_tag": ("タグを付ける（任意）", "Tag the customer (optional)"),
    "rule.field.add_tag.placeholder": ("例: セール関心", "e.g. sale interest"),
    "rule.field.add_tag.help": (
        "このキーワードを送ったお客様に付けるタグです。応答に加えて付きます。空欄なら付けません。",
        "A tag for the customer who sends this keyword, on top of the reply. Leave empty for none.",
    ),
    "invalid.rule.add_tag": ("タグを確認してください（40文字まで、制御文字は使えません）。", "Check the tag (up to 40 characters, no control characters)."),
    # the audit log
    "action.tag.bulk_added": ("タグの一括追加", "Tag added in bulk"),
    "action.tag.bulk_removed": ("タグの一括削除", "Tag removed in bulk"),
    # the timeline: the bot tagged the customer (flows/engine.py ctx.tag)
    "tl.sys.customer.tagged": ("自動でタグ「{tag}」が付きました", "Tagged {tag} automatically"),
}
