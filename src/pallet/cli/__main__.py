from pallet.cli import main

main()
