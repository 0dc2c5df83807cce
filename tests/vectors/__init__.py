"""Golden vectors shared by the Python and TypeScript test suites."""
