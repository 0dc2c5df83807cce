/** Debian's Chromium (the Makefile may name another build in $CHROMIUM); never a downloaded one. */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"];
