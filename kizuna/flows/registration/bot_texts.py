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
        "ja": "すでに会員登録がお済みです。ご登録内容は「会員情報を見る」をタップしてご確認いただけます。",
        "en": "You are already a member. Tap “My member info” to see your details.",
    },
    "member_info_label": {"ja": "会員情報を見る", "en": "My member info"},
    # -- consent ------------------------------------------------------------------------
    "privacy_policy_url": {"ja": "https://example.com/privacy", "en": "https://example.com/privacy"},
    "registration_consent": {
        "ja": "会員登録をはじめます。\nご登録いただく情報は、プライバシーポリシーに沿って大切に取り扱います。\n{url}\n\n内容に同意いただける場合は「同意する」をタップしてください。\n途中でやめる場合は、いつでも「やめる」とお送りください。",
        "en": "Let's get you registered.\nWe handle your information according to our privacy policy:\n{url}\n\nIf you agree, tap “I agree”.\nTo stop at any point, send “cancel”.",
    },
    "registration_consent_yes": {"ja": "同意する", "en": "I agree"},
    "registration_consent_no": {"ja": "同意しない", "en": "I don't agree"},
    "registration_consent_invalid": {
        "ja": "プライバシーポリシーに同意いただける場合は「同意する」、同意いただけない場合は「同意しない」をタップしてください。",
        "en": "Please tap “I agree” or “I don't agree”.",
    },
    "registration_declined": {
        "ja": "承知しました。会員登録は行わず、情報はお預かりしていません。またいつでもお気軽にどうぞ。",
        "en": "No problem. You have not been registered and we have kept none of your information. You are welcome any time.",
    },
    # -- the fields: question, re-prompt, label in summaries ----------------------------
    "registration_ask_name": {
        "ja": "お名前を教えてください。（例：山田 花子）",
        "en": "What is your name? (e.g. Hanako Yamada)",
    },
    "registration_invalid_name": {"ja": "{error}", "en": "Please enter your name in letters, e.g. Hanako Yamada."},
    "registration_label_name": {"ja": "お名前", "en": "Name"},
    "registration_ask_birthday": {
        "ja": "生年月日を教えてください。下の「生年月日を選ぶ」をタップして選ぶか、1990/01/31 のように入力してください。",
        "en": "What is your date of birth? Pick it with the button below or type it like 1990/01/31.",
    },
    "registration_invalid_birthday": {"ja": "{error}", "en": "Please enter a real date of birth like 1990/01/31."},
    "registration_label_birthday": {"ja": "生年月日", "en": "Date of birth"},
    "registration_birthday_picker": {"ja": "生年月日を選ぶ", "en": "Pick a date"},
    "registration_birthday_format": {"ja": "{year}年{month}月{day}日", "en": "{year}-{month:02d}-{day:02d}"},
    "registration_ask_gender": {"ja": "性別をお選びください。", "en": "What is your gender?"},
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
        "ja": "お住まいの都道府県を教えてください。（例：東京都）",
        "en": "Which prefecture do you live in? (e.g. Tokyo)",
    },
    "registration_invalid_prefecture": {"ja": "{error}", "en": "Please enter a prefecture of Japan, e.g. Tokyo or Osaka."},
    "registration_label_prefecture": {"ja": "都道府県", "en": "Prefecture"},
    "registration_ask_phone": {
        "ja": "電話番号を教えてください。（例：090-1234-5678）\n登録しない場合は「スキップ」をタップしてください。",
        "en": "What is your phone number? (e.g. 090-1234-5678)\nTap “Skip” if you'd rather not say.",
    },
    "registration_invalid_phone": {"ja": "{error}", "en": "Please enter a phone number like 090-1234-5678, or tap “Skip”."},
    "registration_label_phone": {"ja": "電話番号", "en": "Phone"},
    "registration_ask_email": {
        "ja": "メールアドレスを教えてください。（例：hanako@example.com）\n登録しない場合は「スキップ」をタップしてください。",
        "en": "What is your e-mail address? (e.g. hanako@example.com)\nTap “Skip” if you'd rather not say.",
    },
    "registration_invalid_email": {"ja": "{error}", "en": "Please enter an e-mail address like hanako@example.com, or tap “Skip”."},
    "registration_label_email": {"ja": "メールアドレス", "en": "E-mail"},
    "registration_skip": {"ja": "スキップ", "en": "Skip"},
    "registration_ask_marketing": {
        "ja": "お得な情報やクーポンをお届けする、お知らせの配信を受け取りますか？",
        "en": "Would you like to receive our news and offers?",
    },
    "registration_invalid_marketing": {
        "ja": "お知らせの配信を受け取る場合は「受け取る」、受け取らない場合は「受け取らない」をタップしてください。",
        "en": "Please tap “Yes, please” or “No, thanks”.",
    },
    "registration_label_marketing": {"ja": "お知らせの配信", "en": "News and offers"},
    "registration_marketing_on": {"ja": "受け取る", "en": "Yes, please"},
    "registration_marketing_off": {"ja": "受け取らない", "en": "No, thanks"},
    "registration_value_empty": {"ja": "未登録", "en": "Not given"},
    # -- confirm and edit ---------------------------------------------------------------
    "registration_confirm_title": {"ja": "登録内容の確認", "en": "Please check your details"},
    "registration_confirm": {
        "ja": "この内容でよろしければ、「登録する」をタップしてください。",
        "en": "Tap “Confirm” to register with these details.",
    },
    "registration_confirm_ok": {"ja": "登録する", "en": "Confirm"},
    "registration_confirm_edit": {"ja": "修正する", "en": "Edit"},
    "registration_confirm_invalid": {
        "ja": "「登録する」か「修正する」をタップしてください。",
        "en": "Please tap “Confirm” or “Edit”.",
    },
    "registration_edit_which": {"ja": "修正する項目をお選びください。", "en": "Which detail would you like to change?"},
    "registration_edit_back": {"ja": "戻る", "en": "Back"},
    # -- completion ---------------------------------------------------------------------
    "registration_completed": {
        "ja": "会員登録が完了しました。ありがとうございます！",
        "en": "You are now registered. Thank you!",
    },
    "registration_coupon_intro": {
        "ja": "会員登録特典クーポンをお送りします。お会計の前に、こちらの画面をスタッフにお見せください。",
        "en": "Here is your welcome coupon. Show it at the checkout.",
    },
    "registration_coupon_unavailable": {
        "ja": "申し訳ございません。会員登録特典クーポンの配布は終了しました。",
        "en": "We're sorry: the welcome coupon is no longer available.",
    },
    # -- a button of a flow that has ended -------------------------------------------------
    "registration_stale_registered": {
        "ja": "こちらのボタンは受付を終了しました。会員登録はすでに完了しています。ご登録内容は「会員情報を見る」をタップしてご確認いただけます。",
        "en": "This button is no longer in use: you are already a member. Tap “My member info” to see your details.",
    },
    "registration_stale_restart": {
        "ja": "こちらのボタンは受付を終了しました。会員登録をご希望の場合は、「会員登録する」をタップして、はじめからお手続きください。",
        "en": "This button is no longer in use. To register, tap “Become a member” and start again.",
    },
    "profile_stale": {
        "ja": "こちらのボタンは受付を終了しました。登録内容を変更する場合は、「登録内容を変更する」をタップしてください。",
        "en": "This button is no longer in use. To change your details, tap “Change my details”.",
    },
    # -- member info and profile edit -----------------------------------------------------
    "member_info_title": {"ja": "会員情報", "en": "Member info"},
    "member_info_edit": {"ja": "登録内容を変更する", "en": "Change my details"},
    "member_info_not_registered": {
        "ja": "まだ会員登録がお済みではありません。会員登録は「会員登録する」をタップしてお手続きください。",
        "en": "You are not a member yet. Tap “Become a member” to register.",
    },
    "member_info_not_registered_gift": {
        "ja": "まだ会員登録がお済みではありません。いま会員登録いただくと、会員登録特典クーポン「{title}」をお送りします。",
        "en": "You are not a member yet. Register now and we'll send you a “{title}” welcome coupon.",
    },
    "profile_edit_which": {
        "ja": "変更する項目をお選びください。途中でやめる場合は「やめる」とお送りください。",
        "en": "Which detail would you like to change? To stop, send “cancel”.",
    },
    "profile_updated": {"ja": "{label}を変更しました。", "en": "Your {label} has been updated."},
    "profile_removed": {"ja": "{label}の登録を削除しました。", "en": "Your {label} has been removed."},
    # -- marketing on/off ---------------------------------------------------------------
    "marketing_stop_label": {"ja": "お知らせを受け取らない", "en": "Stop news and offers"},
    "marketing_start_label": {"ja": "お知らせを受け取る", "en": "Get news and offers"},
    "marketing_opted_out": {
        "ja": "お知らせの配信を受け取らない設定にしました。「会員情報」の「お知らせを受け取る」から、いつでも元に戻せます。",
        "en": "We will no longer send you news and offers. You can turn them back on from your member info.",
    },
    "marketing_opted_in": {
        "ja": "お知らせの配信を受け取る設定にしました。お得な情報やクーポンをお届けします。",
        "en": "You will now receive our news and offers.",
    },
    # -- withdrawal (退会, withdrawal.py) ----------------------------------------------------
    "member_info_withdraw": {"ja": "退会する", "en": "Cancel my membership"},
    "withdrawal_not_member": {
        "ja": "会員登録はされていないため、退会のお手続きは不要です。お知らせが不要な場合は、このアカウントをブロックすると届かなくなります。",
        "en": "You are not a member, so there is nothing to cancel. If you'd rather not hear from us, you can block this account.",
    },
    "withdrawal_explain": {
        "ja": "退会すると、次のようになります。\n・{coupons}\n・お知らせの配信が止まります。\n・{data}{gift}\n\n退会する場合は「退会する」をタップするか、「はい」とお送りください。\n退会しない場合は「やめる」とお送りください。",
        "en": "If you cancel your membership:\n- {coupons}\n- We stop sending you news and offers.\n- {data}{gift}\n\nTo cancel it, tap “Cancel membership” or send “yes”.\nTo stay a member, send “stop”.",
    },
    "withdrawal_coupons_some": {
        "ja": "お持ちのクーポン（{count}枚）は使えなくなります。",
        "en": "Your {count} coupon(s) can no longer be used.",
    },
    "withdrawal_coupons_none": {"ja": "会員向けのクーポンは受け取れなくなります。", "en": "You will no longer receive member coupons."},
    "withdrawal_data_delete": {
        "ja": "ご登録の情報（お名前、生年月日、電話番号など）はすぐに削除します。",
        "en": "Your registered details (name, date of birth, phone ...) are deleted at once.",
    },
    "withdrawal_data_keep": {
        "ja": "ご登録の情報（お名前、生年月日、電話番号など）は、当店の保存期間が過ぎたのち削除します。",
        "en": "Your registered details (name, date of birth, phone ...) are deleted when our retention period ends.",
    },
    "withdrawal_no_second_gift": {
        "ja": "\n・もう一度会員登録されても、会員登録特典クーポンはお送りできません。",
        "en": "\n- If you register again later, the welcome coupon is not given a second time.",
    },
    "withdrawal_confirm_yes": {"ja": "退会する", "en": "Cancel membership"},
    "withdrawal_confirm_no": {"ja": "退会しない", "en": "Stay a member"},
    "withdrawal_confirm_invalid": {
        "ja": "退会する場合は「退会する」をタップするか「はい」と、退会しない場合は「やめる」とお送りください。",
        "en": "Tap “Cancel membership” or send “yes” to cancel it; send “stop” to stay a member.",
    },
    "withdrawal_kept": {
        "ja": "退会のお手続きを中止しました。引き続き会員としてご利用いただけます。",
        "en": "Nothing has changed: you are still a member.",
    },
    "withdrawal_done": {
        "ja": "退会のお手続きが完了しました。これまでご利用いただき、ありがとうございました。\nまた会員登録をご希望の際は「会員登録」とお送りください。",
        "en": "Your membership has been cancelled. Thank you for having been with us.\nTo become a member again, send “register”.",
    },
    "withdrawal_stale_done": {
        "ja": "こちらのボタンは受付を終了しました。会員ではないため、退会のお手続きは不要です。",
        "en": "This button is no longer in use: you are not a member, so there is nothing to cancel.",
    },
    "withdrawal_stale_member": {
        "ja": "こちらのボタンは受付を終了しました。退会をご希望の場合は、もう一度「退会」とお送りください。",
        "en": "This button is no longer in use. To cancel your membership, send “withdraw membership” again.",
    },
    # -- the registration coupon, once per person ---------------------------------------------
    "registration_coupon_not_again": {
        "ja": "会員登録特典クーポンはお一人様1回限りのため、再登録の際にはお送りしておりません。",
        "en": "The welcome coupon is given once per person, so none is sent when you register again.",
    },
    # -- privacy notice updates (storage/consents.py) ------------------------------------------
    "privacy_updated": {
        "ja": "プライバシーポリシーが更新されました。内容をご確認のうえ、同意いただける場合は「同意する」をタップしてください。",
        "en": "Our privacy policy has been updated. Please read it and tap “I agree” if you agree.",
    },
    "privacy_read_label": {"ja": "プライバシーポリシーを読む", "en": "Read the privacy policy"},
    "privacy_accept_label": {"ja": "同意する", "en": "I agree"},
    "privacy_accepted": {
        "ja": "新しいプライバシーポリシーへの同意を承りました。ありがとうございます。",
        "en": "Thank you: your agreement to the updated privacy policy is recorded.",
    },
    "privacy_already_accepted": {
        "ja": "最新のプライバシーポリシーに同意いただいています。",
        "en": "You have already agreed to the current privacy policy.",
    },
}

texts.register(TEXTS)
