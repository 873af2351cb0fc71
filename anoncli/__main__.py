from anoncli.cli.app import main

main()
