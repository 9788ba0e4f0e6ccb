from worker.entry import command

command()
