from authz.cli import main

main()
