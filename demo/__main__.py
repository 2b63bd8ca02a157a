from fip_demo.app import main

main()
