"""The training modes, in a module light enough for the CLI to import without torch or diffusers."""

MODES: tuple[str, ...] = ("vae", "base", "controlnet", "sr")
