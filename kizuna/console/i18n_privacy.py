"""Texts of the 「プライバシー」 page, the customer panel's consent history and the timeline rows of
withdrawal (退会) and privacy notices: Japanese first, English beside it. Joined into
`i18n.MESSAGES` like i18n_tags.py."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "nav.privacy": ("プライバシー", "Privacy"),
    "privacy.title": ("プライバシー", "Privacy"),
    "privacy.lead": (
        "プライバシーポリシーの版と利用目的、お客様の同意の記録、退会時の登録情報の扱いを管理します。",
        "The privacy notice versions and purposes of use, customers' consent on record, and what withdrawal does to their data.",
    ),
    "privacy.current": ("現在の版：{version}", "Current version: {version}"),
    "privacy.current.short": ("現在", "current"),
    "privacy.versions": ("プライバシーポリシーの版", "Privacy notice versions"),
    "privacy.on_older": ("古い版に同意している会員：{count}人（会員情報で新しい版への同意をお願いしています）",
                         "{count} members accepted an older version (asked on their member info card)"),
    "privacy.col.version": ("版", "Version"),
    "privacy.col.published": ("公開日時", "Published"),
    "privacy.col.url": ("URL", "URL"),
    "privacy.col.members": ("同意中の会員", "Members on it"),
    "privacy.col.granted": ("同意の記録", "Grants"),
    "privacy.col.withdrawn": ("撤回の記録", "Withdrawals"),
    "privacy.none": ("まだ版がありません。", "No version yet."),
    "privacy.publish": ("新しい版を公開", "Publish a new version"),
    "privacy.publish.help": (
        "公開するとすぐに現在の版になり、会員登録の同意画面のリンクも新しいURLに変わります。"
        "古い版に同意している会員には、会員情報で新しい版への同意をお願いします。公開した版は変更できません。",
        "It becomes current at once and the registration's consent question links its URL. Members who accepted an older "
        "version are asked to accept it on their member info card. A published version cannot be changed.",
    ),
    "privacy.field.version": ("版の名前", "Version label"),
    "privacy.field.version.help": ("例：2027-04（他の版と重ならない名前）", "e.g. 2027-04 (unique)"),
    "privacy.field.url": ("掲載URL（https://）", "Published at (https://)"),
    "privacy.field.text": ("本文", "Text"),
    "privacy.purpose.membership": ("会員サービス", "Membership"),
    "privacy.purpose.marketing": ("お知らせの配信", "Marketing messages"),
    "privacy.purpose.analytics": ("分析", "Analytics"),
    "privacy.purposes.current": ("現在の利用目的", "Current purposes of use"),
    "privacy.publish.submit": ("この内容で公開する", "Publish"),
    "privacy.withdrawal": ("退会時の登録情報", "Registration data on withdrawal"),
    "privacy.withdrawal.help": (
        "お客様がトークで退会したとき、会員登録でお預かりした情報（お名前、生年月日、性別、都道府県、電話番号、メールアドレス）をどうするか。",
        "What happens to the registration data (name, date of birth, gender, prefecture, phone, e-mail) when a customer withdraws in the chat.",
    ),
    "privacy.withdrawal.delete": ("すぐに削除する（おすすめ）", "Delete at once (recommended)"),
    "privacy.withdrawal.delete.help": ("退会の手続きと同時に消去します。", "Cleared in the withdrawal itself."),
    "privacy.withdrawal.keep": ("保存期間まで残す", "Keep until the retention period ends"),
    "privacy.withdrawal.keep.help": ("保存期間の自動削除で消去されるまで残します。", "Kept until the retention purge removes it."),
    "notice.privacy_published": ("新しい版を公開しました。", "The new version is published."),
    "notice.privacy_settings_saved": ("退会時の扱いを保存しました。", "Saved."),
    "invalid.privacy.version": ("版の名前を確認してください", "Check the version label"),
    "invalid.privacy.url": ("https:// で始まるURLを入力してください", "Enter an https:// address"),
    "invalid.privacy.text": ("本文を入力してください", "Enter the text"),
    "invalid.privacy.purposes": ("利用目的を入力してください", "Describe each purpose"),
    "invalid.privacy.withdrawal_data": ("選択肢から選んでください", "Choose one"),
    "conflict.version_taken": ("その版の名前はすでに使われています", "That version label is taken"),
    # the customer panel
    "panel.withdrawn": ("退会済みです（{when}）。", "Withdrew their membership ({when})."),
    "panel.consents": ("同意の記録", "Consent on record"),
    "panel.consents.notice": ("同意した版", "Notice accepted"),
    "panel.consents.older": ("最新は{version}", "current is {version}"),
    "panel.consents.accepted_at": ("同意日時", "Accepted"),
    "panel.consents.withdrawn_at": ("退会日時", "Withdrew"),
    "panel.consents.none": ("記録はありません。", "Nothing on record."),
    "consent.action.granted": ("同意", "granted"),
    "consent.action.withdrawn": ("撤回", "withdrawn"),
    "consent.version": ("版 {version}", "version {version}"),
    "consent.channel.line_chat": ("LINEトーク", "LINE chat"),
    "consent.channel.console": ("管理画面", "console"),
    "consent.channel.api": ("API", "API"),
    "consent.channel.import": ("取り込み", "import"),
    # the timeline
    "tl.sys.withdrawn": ("退会", "Withdrew their membership"),
    "tl.sys.privacy.accepted": ("新しいプライバシーポリシーに同意", "Accepted the updated privacy notice"),
}
