// Where an API URL's web pages live, apart from the App module: the token files and the clone
// URLs need only this, and a process without a GitHub App must not load Octokit for it.

/** The web host of an API URL: api.github.com → github.com; GHES https://host/api/v3 → host. */
export function webHost(apiUrl: string): string {
  const url = new URL(apiUrl);
  return url.host === 'api.github.com' ? 'github.com' : url.host;
}
