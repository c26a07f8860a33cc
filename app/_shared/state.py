"""Session-state keys that pages pass to each other (named once here; a widget's own key stays on its page)."""

REPORT = "report"  # the sidebar's report picker
SEED = "seed"  # the sidebar's seed picker (the models the pages load)
REPORT_WANTED = "report_wanted"  # set by the Build page: the report the sidebar picks on the next run
OPEN_OVERVIEW = "open_overview"  # set by the Build page: Home.py turns to the Overview once it is in the navigation
WATCHING_BUILD = "watching_build"  # the Build page is following a build: redraw the whole app once when it ends
