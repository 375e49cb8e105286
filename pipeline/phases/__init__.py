"""The phases of a job, each committed by markers so a re-run skips finished work."""
