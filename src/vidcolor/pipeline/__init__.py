"""The frame loop and its glue: presets (geometry and post-processing), references."""
