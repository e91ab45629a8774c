"""Default texts of member registration, member info and marketing consent.

Japanese first, English for customers whose LINE language is English. Operators
edit them through `PUT /api/v1/texts/{key}/{locale}`; keys are stable data.
`{placeholders}` are filled by the flow (`ctx.text(key, **values)`).

The `registration_invalid_<step>` texts are the re-prompts for a wrong answer. In
Japanese they default to `{error}`: the validator's own message, which names what
was wrong ("2月30日という日付はありません…"). The validators speak only Japanese,
so the English default is a general hint instead.
"""

from __future__ import annotations

from kizuna.storage import texts

TEXTS: dict[str, dict[str, str]] = {
    # -- offering and starting --------------------------------------------------------
    "registration_offer_label": {"ja": "会員登録する", "en": "Become a member"},
    "registration_already": {
        "ja": "すでに会員登録がお済みです。ご登録内容は「会員情報を見る」からご確認いただけます。",
        "en": "You are already a member. Tap “My member info” to see your details.",
    },
    "member_info_label": {"ja": "会員情報を見る", "en": "My member info"},
    # -- consent ------------------------------------------------------------------------
    "privacy_policy_url": {"ja": "https://example.com/privacy", "en": "https://example.com/privacy"},
    "registration_consent": {
        "ja": "会員登録をはじめます。\nご登録いただく情報は、プライバシーポリシーに沿って大切に取り扱います。\n{url}\n\n内容に同意いただける場合は「同意する」を押してください。",
        "en": "Let's get you registered.\nWe handle your information according to our privacy policy:\n{url}\n\nIf you agree, tap “I agree”.",
    },
    "registration_consent_yes": {"ja": "同意する", "en": "I agree"},
    "registration_consent_no": {"ja": "同意しない", "en": "I don't agree"},
    "registration_consent_invalid": {
        "ja": "プライバシーポリシーに同意いただける場合は「同意する」、同意いただけない場合は「同意しない」を押してください。",
        "en": "Please tap “I agree” or “I don't agree”.",
    },
    "registration_declined": {
        "ja": "承知しました。会員登録は行わず、情報はお預かりしていません。またいつでもお気軽にどうぞ。",
        "en": "No problem. You have not been registered and we have kept none of your information. You are welcome any time.",
    },
    # -- the fields: question, re-prompt, label in summaries ----------------------------
    "registration_ask_name": {
        "ja": "お名前を教えてください。(例: 山田 花子)",
        "en": "What is your name? (e.g. Hanako Yamada)",
    },
    "registration_invalid_name": {"ja": "{error}", "en": "Please enter your name in letters, e.g. Hanako Yamada."},
    "registration_label_name": {"ja": "お名前", "en": "Name"},
    "registration_ask_birthday": {
        "ja": "生年月日を教えてください。下のボタンから選ぶか、1990/01/31 のように入力してください。",
        "en": "What is your date of birth? Pick it with the button below or type it like 1990/01/31.",
    },
    "registration_invalid_birthday": {"ja": "{error}", "en": "Please enter a real date of birth like 1990/01/31."},
    "registration_label_birthday": {"ja": "生年月日", "en": "Date of birth"},
    "registration_birthday_picker": {"ja": "生年月日を選ぶ", "en": "Pick a date"},
    "registration_birthday_format": {"ja": "{year}年{month}月{day}日", "en": "{year}-{month:02d}-{day:02d}"},
    "registration_ask_gender": {"ja": "性別を選んでください。", "en": "What is your gender?"},
    "registration_invalid_gender": {
        "ja": "{error}",
        "en": "Please choose Female, Male, Other or Prefer not to say.",
    },
    "registration_label_gender": {"ja": "性別", "en": "Gender"},
    "registration_gender_female": {"ja": "女性", "en": "Female"},
    "registration_gender_male": {"ja": "男性", "en": "Male"},
    "registration_gender_other": {"ja": "その他", "en": "Other"},
    "registration_gender_unanswered": {"ja": "回答しない", "en": "Prefer not to say"},
    "registration_ask_prefecture": {
        "ja": "お住まいの都道府県を教えてください。(例: 東京都)",
        "en": "Which prefecture do you live in? (e.g. Tokyo)",
    },
    "registration_invalid_prefecture": {"ja": "{error}", "en": "Please enter a prefecture of Japan, e.g. Tokyo or Osaka."},
    "registration_label_prefecture": {"ja": "都道府県", "en": "Prefecture"},
    "registration_ask_phone": {
        "ja": "電話番号を教えてください。(例: 090-1234-5678)\n登録しない場合は「スキップ」を押してください。",
        "en": "What is your phone number? (e.g. 090-1234-5678)\nTap “Skip” if you'd rather not say.",
    },
    "registration_invalid_phone": {"ja": "{error}", "en": "Please enter a phone number like 090-1234-5678, or tap “Skip”."},
    "registration_label_phone": {"ja": "電話番号", "en": "Phone"},
    "registration_ask_email": {
        "ja": "メールアドレスを教えてください。(例: hanako@example.com)\n登録しない場合は「スキップ」を押してください。",
        "en": "What is your e-mail address? (e.g. hanako@example.com)\nTap “Skip” if you'd rather not say.",
    },
    "registration_invalid_email": {"ja": "{error}", "en": "Please enter an e-mail address like hanako@example.com, or tap “Skip”."},
    "registration_label_email": {"ja": "メールアドレス", "en": "E-mail"},
    "registration_skip": {"ja": "スキップ", "en": "Skip"},
    "registration_ask_marketing": {
        "ja": "お得な情報やクーポンのお知らせを受け取りますか?",
        "en": "Would you like to receive news and offers from us?",
    },
    "registration_invalid_marketing": {
        "ja": "お知らせを受け取る場合は「はい」、受け取らない場合は「いいえ」を押してください。",
        "en": "Please tap “Yes” or “No”.",
    },
    "registration_label_marketing": {"ja": "お知らせ", "en": "News and offers"},
    "registration_yes": {"ja": "はい", "en": "Yes"},
    "registration_no": {"ja": "いいえ", "en": "No"},
    "registration_marketing_on": {"ja": "受け取る", "en": "Yes, please"},
    "registration_marketing_off": {"ja": "受け取らない", "en": "No, thanks"},
    "registration_value_empty": {"ja": "未登録", "en": "Not given"},
    # -- confirm and edit ---------------------------------------------------------------
    "registration_confirm_title": {"ja": "登録内容の確認", "en": "Please check your details"},
    "registration_confirm": {
        "ja": "この内容で登録します。よろしければ「登録する」を押してください。",
        "en": "Tap “Confirm” to register with these details.",
    },
    "registration_confirm_ok": {"ja": "登録する", "en": "Confirm"},
    "registration_confirm_edit": {"ja": "修正する", "en": "Edit"},
    "registration_confirm_invalid": {
        "ja": "「登録する」か「修正する」を押してください。",
        "en": "Please tap “Confirm” or “Edit”.",
    },
    "registration_edit_which": {"ja": "修正する項目を選んでください。", "en": "Which detail would you like to change?"},
    "registration_edit_back": {"ja": "戻る", "en": "Back"},
    # -- completion ---------------------------------------------------------------------
    "registration_completed": {
        "ja": "会員登録が完了しました。ありがとうございます!",
        "en": "You are now registered. Thank you!",
    },
    "registration_coupon_intro": {
        "ja": "ご登録の特典クーポンをお送りします。お会計の際にお見せください。",
        "en": "Here is your welcome coupon. Show it at the checkout.",
    },
    "registration_coupon_unavailable": {
        "ja": "なお、登録特典のクーポンは現在お配りできません。ご了承ください。",
        "en": "We're sorry, there is no welcome coupon available at the moment.",
    },
    # -- member info and profile edit -----------------------------------------------------
    "member_info_title": {"ja": "会員情報", "en": "Member info"},
    "member_info_edit": {"ja": "登録内容を変更する", "en": "Change my details"},
    "member_info_not_registered": {
        "ja": "まだ会員登録がお済みでないようです。会員登録をすると特典クーポンをお送りします。",
        "en": "You are not a member yet. Register and we'll send you a welcome coupon.",
    },
    "profile_edit_which": {"ja": "変更する項目を選んでください。", "en": "Which detail would you like to change?"},
    "profile_updated": {"ja": "{label}を変更しました。", "en": "Your {label} has been updated."},
    "profile_removed": {"ja": "{label}の登録を削除しました。", "en": "Your {label} has been removed."},
    # -- marketing on/off ---------------------------------------------------------------
    "marketing_stop_label": {"ja": "お知らせを停止する", "en": "Stop news and offers"},
    "marketing_start_label": {"ja": "お知らせを受け取る", "en": "Get news and offers"},
    "marketing_opted_out": {
        "ja": "お知らせの配信を停止しました。再開したい場合は「会員情報」からいつでも変更できます。",
        "en": "We will no longer send you news and offers. You can turn them back on from your member info.",
    },
    "marketing_opted_in": {
        "ja": "お知らせの配信を受け付けました。お得な情報をお届けします。",
        "en": "You will now receive our news and offers.",
    },
}

texts.register(TEXTS)
