"""The browser editor's static files; a package only so wheels ship them (no Python here)."""
