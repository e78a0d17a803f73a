from memrepro.cli import main

main()
