def demo_step(ee, report, ctx):
    pass
