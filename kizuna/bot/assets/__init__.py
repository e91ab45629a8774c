"""Files bundled with the bot: the rich menu images (made by tools/make_richmenu_images.py)."""
