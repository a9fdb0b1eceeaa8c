/** A start-up problem the operator must fix; the CLI prints it and exits 2 (other failures exit 1). */
export class StartupError extends Error {}
