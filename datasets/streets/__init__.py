"""The built-in synthetic street scenes: layout, shading, rendering (segbench.datasets.synthetic registers them)."""
