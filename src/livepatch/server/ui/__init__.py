"""The web dashboard at ``/ui``: server-rendered HTML, hand-made SVG charts, no scripts."""
