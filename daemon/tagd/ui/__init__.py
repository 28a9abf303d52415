"""The web pages (at `/`): server-rendered with Jinja2 over the same catalog and
API as everything else, with a little JavaScript of tagd's own and no build
step. Sign-in and CSRF protection are in session.py and tagd.api.guard."""
