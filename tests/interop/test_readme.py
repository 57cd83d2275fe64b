"""The README's client recipes are the files the interop tests run, character for character."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.conftest import GO_DIR, NODE_DIR, RECIPES

README = Path(__file__).resolve().parents[2] / "README.md"

# Each recipe file, and the language of its README code block.
RECIPE_FILES = {
    RECIPES / "curl.sh": "sh",
    NODE_DIR / "recipe.mjs": "js",
    RECIPES / "authlib_client.py": "python",
    RECIPES / "requests_oauthlib_client.py": "python",
    GO_DIR / "recipe.go": "go",
    RECIPES / "httpx_client.py": "python",
}


@pytest.mark.parametrize("recipe", list(RECIPE_FILES), ids=lambda path: path.name)
def test_readme_shows_the_recipe_the_tests_run(recipe: Path) -> None:
    block = f"```{RECIPE_FILES[recipe]}\n{recipe.read_text()}```\n"
    assert block in README.read_text(), f"README.md has no code block identical to {recipe}"


def test_readme_recipes_in_order() -> None:
    """Under "## Client recipes", in the order of RECIPE_FILES."""
    readme = README.read_text()
    section = readme.index("\n## Client recipes\n")
    positions = [readme.index(recipe.read_text()) for recipe in RECIPE_FILES]
    assert section < positions[0] and positions == sorted(positions)
