// What a repository registration takes (coordinator/repos.ts): which URLs the grid fetches from, what {owner}/{repo}
// a status target posts to, which branches a glob registers, and every key of a registration checked.
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { BadRepoError, DEFAULT_BRANCHES, GITHUB_API, MAX_BRANCH_GLOBS, MAX_POLL_S, MIN_POLL_S, branchRegistered, checkRepoUrl, sameRepository, ownerAndRepo, parseRepoInit } from '../../coordinator/repos.ts'

function refused (fn: () => unknown, pattern: RegExp): void {
  try {
    fn()
  } catch (err: any) {
    assert.instance(err, BadRepoError)
    assert.is(err.name, 'BadRepoError')
    assert.is(err.status, 400)
    assert.not.match(err.message, /\n/)
    assert.match(err.message, pattern)
    return
  }
  assert.unreachable('accepted')
}

const urls = suite('checkRepoUrl')

urls('https, http, ssh, scp-like, file:// and absolute paths are taken', () => {
  for (const url of ['https://github.com/acme/widgets.git', 'http://git.local/acme/widgets', 'ssh://git@github.com/acme/widgets.git',
    'ssh://git@host:2222/group/sub/widgets.git', 'git@github.com:acme/widgets.git', 'github.com:acme/widgets.git', 'file:///srv/git/widgets.git', '/srv/git/widgets.git']) {
    assert.is(checkRepoUrl(url), url)
  }
})

urls('credentials in the URL are refused, saying where they belong', () => {
  refused(() => checkRepoUrl('https://user:pass@github.com/acme/widgets.git'), /password.*git config/)
  refused(() => checkRepoUrl('https://ghp_token@github.com/acme/widgets.git'), /token.*git config/)
  refused(() => checkRepoUrl('ssh://git:pass@github.com/acme/widgets.git'), /password/)
})

urls('other transports, options, control characters and relative paths are refused', () => {
  refused(() => checkRepoUrl('ext::sh -c touch% /tmp/pwned'), /not a repository URL|not taken|spaces/)
  refused(() => checkRepoUrl('git://github.com/acme/widgets.git'), /git:\/\/ URLs are not taken/)
  refused(() => checkRepoUrl('ftp://host/repo'), /not taken/)
  refused(() => checkRepoUrl('--upload-pack=touch /tmp/x'), /start with "-"|spaces/)
  refused(() => checkRepoUrl('-oProxyCommand=x'), /start with "-"/)
  refused(() => checkRepoUrl('https://github.com/acme/w\nidgets'), /one line/)
  refused(() => checkRepoUrl('/srv/git/w\u0000x'), /one line/)
  refused(() => checkRepoUrl('relative/path'), /not a repository URL/)
  refused(() => checkRepoUrl('https://github.com/'), /no repository path/)
  refused(() => checkRepoUrl('file://otherhost/srv/x'), /file:\/\/\/PATH/)
  refused(() => checkRepoUrl(''), /url must be/)
  refused(() => checkRepoUrl(42), /url must be/)
  refused(() => checkRepoUrl(`https://h/${'x'.repeat(3000)}`), /longer than/)
})

const names = suite('ownerAndRepo: the last two path segments, without .git')

names('from every URL shape', () => {
  assert.equal(ownerAndRepo('https://github.com/acme/widgets.git'), { owner: 'acme', repo: 'widgets' })
  assert.equal(ownerAndRepo('https://github.com/acme/widgets'), { owner: 'acme', repo: 'widgets' })
  assert.equal(ownerAndRepo('https://github.com/acme/widgets/'), { owner: 'acme', repo: 'widgets' })
  assert.equal(ownerAndRepo('git@github.com:acme/widgets.git'), { owner: 'acme', repo: 'widgets' })
  assert.equal(ownerAndRepo('ssh://git@gitea.local:2222/acme/widgets.git'), { owner: 'acme', repo: 'widgets' })
  assert.equal(ownerAndRepo('https://gitlab.com/group/sub/widgets.git'), { owner: 'sub', repo: 'widgets' })
  assert.equal(ownerAndRepo('/srv/git/acme/widgets.git'), { owner: 'acme', repo: 'widgets' })
  assert.equal(ownerAndRepo('https://h/my%20org/widgets.git'), { owner: 'my org', repo: 'widgets' })
})

names('fewer than two segments: none', () => {
  assert.is(ownerAndRepo('https://github.com/widgets.git'), undefined)
  assert.is(ownerAndRepo('git@host:widgets.git'), undefined)
  assert.is(ownerAndRepo('/widgets.git'), undefined)
})

const branches = suite('branchRegistered')

branches('globs match branch names, not tags or other refs', () => {
  assert.ok(branchRegistered(['main'], 'refs/heads/main'))
  assert.not.ok(branchRegistered(['main'], 'refs/heads/mainline'))
  assert.not.ok(branchRegistered(['main'], 'refs/tags/main'))
  assert.ok(branchRegistered(['release/*'], 'refs/heads/release/1.0'))
  assert.not.ok(branchRegistered(['release/*'], 'refs/heads/release/1.0/hotfix'))
  assert.ok(branchRegistered(['**'], 'refs/heads/feature/deep/x'))
  assert.ok(branchRegistered(['main', 'dev-*'], 'refs/heads/dev-42'))
})

const init = suite('parseRepoInit')

init('branches default to the default branch alone', () => {
  const parsed = parseRepoInit({ url: 'https://github.com/acme/widgets.git', hookSecret: 's' })
  assert.equal(parsed.branches, [...DEFAULT_BRANCHES])
  assert.equal(DEFAULT_BRANCHES, ['main'])
})

init('a github status target without url goes to api.github.com; a trailing slash is dropped', () => {
  assert.is(parseRepoInit({ url: 'https://github.com/a/b', poll: 60, status: { kind: 'github', token: 't' } }).status?.url, GITHUB_API)
  assert.is(parseRepoInit({ url: 'https://gitea.local/a/b', poll: 60, status: { kind: 'gitea', url: 'https://gitea.local/api/v1/', token: 't' } }).status?.url, 'https://gitea.local/api/v1')
})

init('every bad key is refused, naming it', () => {
  const url = 'https://github.com/acme/widgets.git'
  refused(() => parseRepoInit(null), /JSON object/)
  refused(() => parseRepoInit([url]), /JSON object/)
  refused(() => parseRepoInit({ url, hookSecret: 's', branch: ['main'] }), /unknown key branch/)
  refused(() => parseRepoInit({ url }), /hookSecret.*poll/)
  refused(() => parseRepoInit({ url, poll: MIN_POLL_S - 1 }), /poll must be/)
  refused(() => parseRepoInit({ url, poll: MAX_POLL_S + 1 }), /poll must be/)
  refused(() => parseRepoInit({ url, poll: 30.5 }), /poll must be/)
  refused(() => parseRepoInit({ url, poll: '60' }), /poll must be/)
  refused(() => parseRepoInit({ url, hookSecret: '' }), /hookSecret/)
  refused(() => parseRepoInit({ url, hookSecret: 'a\nb' }), /hookSecret.*one line/)
  refused(() => parseRepoInit({ url, hookSecret: 's', branches: [] }), /branches/)
  refused(() => parseRepoInit({ url, hookSecret: 's', branches: 'main' }), /branches/)
  refused(() => parseRepoInit({ url, hookSecret: 's', branches: ['refs/heads/main'] }), /without refs\/heads/)
  refused(() => parseRepoInit({ url, hookSecret: 's', branches: ['ma in'] }), /not a branch glob/)
  refused(() => parseRepoInit({ url, hookSecret: 's', branches: Array.from({ length: MAX_BRANCH_GLOBS + 1 }, (_, i) => `b${i}`) }), /more than/)
  refused(() => parseRepoInit({ url, hookSecret: 's', status: { kind: 'gitlab', token: 't' } }), /status.kind/)
  refused(() => parseRepoInit({ url, hookSecret: 's', status: { kind: 'gitea', token: 't' } }), /status.url must be given/)
  refused(() => parseRepoInit({ url, hookSecret: 's', status: { kind: 'github' } }), /status.token/)
  refused(() => parseRepoInit({ url, hookSecret: 's', status: { kind: 'github', url: 'ftp://x', token: 't' } }), /https/)
  refused(() => parseRepoInit({ url, hookSecret: 's', status: { kind: 'github', url: 'https://u:p@api.github.com', token: 't' } }), /credentials/)
  refused(() => parseRepoInit({ url, hookSecret: 's', status: { kind: 'github', token: 't', extra: 1 } }), /status.extra/)
  refused(() => parseRepoInit({ url: 'https://github.com/widgets', hookSecret: 's', status: { kind: 'github', token: 't' } }), /owner.*repo/)
  // github.com's API is the default only for a repository on github.com: a token for another host never goes there.
  for (const elsewhere of ['https://ghe.example.com/acme/widgets.git', 'git@ghe.example.com:acme/widgets.git', 'ssh://git@git.example.org/acme/widgets', '/srv/git/acme/widgets.git']) {
    refused(() => parseRepoInit({ url: elsewhere, hookSecret: 's', status: { kind: 'github', token: 't' } }), /status.url must be given: .* is not on github.com/)
  }
  for (const onGithub of ['https://github.com/acme/widgets.git', 'git@github.com:acme/widgets.git', 'ssh://git@GitHub.com/acme/widgets']) {
    assert.is(parseRepoInit({ url: onGithub, hookSecret: 's', status: { kind: 'github', token: 't' } }).status?.url, 'https://api.github.com')
  }
})

urls('the same repository under two spellings is one: file:// or a path, a trailing slash, .git or not', () => {
  assert.ok(sameRepository('file:///srv/git/x.git', '/srv/git/x.git'))
  assert.ok(sameRepository('/srv/git/x.git/', '/srv/git/x'))
  assert.ok(sameRepository('https://github.com/acme/widgets.git', 'https://github.com/acme/widgets'))
  assert.not.ok(sameRepository('/srv/git/x.git', '/srv/git/y.git'))
  assert.not.ok(sameRepository('https://github.com/acme/widgets', 'https://github.com/acme/gadgets'))
})

urls.run()
names.run()
branches.run()
init.run()
