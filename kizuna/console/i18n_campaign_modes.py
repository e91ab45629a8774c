"""Texts of the campaigns' delivery modes (narrowcast to a LINE audience) and recurring
campaigns (繰り返し配信), in the editor and on a campaign's page: Japanese first, English beside
it. Joined into `i18n.MESSAGES` like i18n_campaigns.py. LINE's own words: オーディエンス配信
(narrowcast to an audience), マルチキャスト."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    # the editor: how it is sent
    "campaigns.delivery": ("送信方法", "Delivery"),
    "campaigns.delivery.auto": ("自動", "Automatic"),
    "campaigns.delivery.multicast": ("マルチキャスト", "Multicast"),
    "campaigns.delivery.narrowcast": ("オーディエンス配信", "Narrowcast"),
    "campaigns.delivery.help": (
        "全員に同じ内容の大規模配信は、配信対象を LINE のオーディエンスとしてアップロードし、1 回のリクエストで送れます"
        "（オーディエンス配信）。自動ではショップの設定人数以上で使います。名前の差し込み・計測用リンク・クーポンがある配信、"
        "{n} 人未満の配信ではマルチキャストになります。",
        "Identical content to a very large audience can go as one request to a LINE audience uploaded from it (narrowcast). "
        "Automatic uses it from the shop's threshold. Not with names, tracked links or a coupon; under {n} recipients it goes by multicast.",
    ),
    "invalid.campaign.delivery": (
        "オーディエンス配信は全員に同じ内容のときだけ使えます。名前の差し込み・計測用リンク・クーポンを外すか、送信方法を変えてください。",
        "Narrowcast sends the same content to everyone: remove names, tracked links and the coupon, or choose another delivery.",
    ),
    # the editor: a recurrence
    "campaigns.when.repeat": ("繰り返し", "Recurring"),
    "campaigns.recurrence.rule": ("繰り返しのルール（cron 形式）", "Rule (cron)"),
    "campaigns.recurrence.help": (
        "分 時 日 月 曜日 の順に書きます（ショップのタイムゾーン {zone}）。例: 「0 10 * * 1」毎週月曜 10:00、「30 12 1 * *」毎月1日 12:30、"
        "「0 9 * * 1-5」平日 9:00。1 時間に 1 回までです。各回が別の配信として記録されます。",
        "minute hour day month weekday, in the shop's zone ({zone}). E.g. 「0 10 * * 1」 Mondays 10:00, 「30 12 1 * *」 the 1st at 12:30, "
        "「0 9 * * 1-5」 weekdays 9:00. At most hourly. Each run is recorded as its own campaign.",
    ),
    "campaigns.recurrence.next": ("次の 3 回", "Next three runs"),
    "campaigns.recurrence.check": ("次の配信日時を確認", "Show the next runs"),
    "invalid.campaign.recurrence": ("繰り返しのルールを確認してください。", "Check the rule."),
    # a campaign's page
    "campaigns.recurrence.title": ("繰り返し配信", "Recurring campaign"),
    "campaigns.recurrence.stopped": ("繰り返しは止まっています。", "The recurrence is stopped."),
    "campaigns.recurrence.runs": ("これまでの配信", "Runs"),
    "campaigns.recurrence.no_runs": ("まだ配信されていません。", "No run yet."),
    "campaigns.recurrence.col.when": ("配信回", "Run"),
    "campaigns.recurrence.run_of": ("繰り返し配信「{name}」の 1 回です。", "A run of the recurring campaign 「{name}」."),
    "campaigns.recurrence.cancel_help": (
        "中止すると、これからの配信は行われません（配信中の回はそのまま続きます）。",
        "Cancelling stops the runs to come (a run already sending goes on).",
    ),
    "campaigns.narrowcast.title": ("オーディエンス配信", "Narrowcast"),
    "campaigns.narrowcast.delivering": (
        "LINE が配信しています。オーディエンス配信は LINE に渡した後は一時停止・中止できません。",
        "LINE is delivering. A narrowcast handed to LINE can no longer be paused or cancelled.",
    ),
    "campaigns.narrowcast.state.uploading": ("オーディエンスをアップロード中", "Uploading the audience"),
    "campaigns.narrowcast.state.waiting": ("LINE がオーディエンスを作成中", "LINE is building the audience"),
    "campaigns.narrowcast.state.sending": ("LINE へ送信中", "Sending to LINE"),
    "campaigns.narrowcast.state.delivering": ("LINE が配信中", "LINE is delivering"),
    "campaigns.narrowcast.state.done": ("完了", "Done"),
    "campaigns.narrowcast.state.cancelled": ("中止（送信していません）", "Cancelled (nothing sent)"),
    "campaigns.narrowcast.uploaded": ("アップロード", "Uploaded"),
    "campaigns.narrowcast.target": ("LINE の対象数", "LINE's target"),
    "campaigns.narrowcast.success": ("LINE の成功数", "LINE delivered"),
    "campaigns.narrowcast.failure": ("LINE の失敗数", "LINE failed"),
    "campaigns.narrowcast.help": (
        "LINE は件数だけを返し、誰に届かなかったかは返しません。失敗があった場合、その回の配信先は「不明」として数えます。",
        "LINE reports counts, not who: when some failed, the recipients are counted as undetermined.",
    ),
    "campaigns.method.narrowcast": ("全員に同じ内容（オーディエンス配信・1 回のリクエスト）", "Same content for all (narrowcast, one request)"),
}
