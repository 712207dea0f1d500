"""``python -m deploy_code`` runs the CLI."""

from deploy_code.cli import main

if __name__ == "__main__":
    main()
