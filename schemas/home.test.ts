import { describe, expect, it } from 'vitest';
import { configPath, writHome } from './home.ts';

describe('the data directory', () => {
  it('is WRIT_HOME, else WRIT_DATA_DIR, else the user data directory, never the working directory', () => {
    expect(writHome({ WRIT_HOME: '/srv/writ', WRIT_DATA_DIR: '/old', HOME: '/home/u' }, 'linux')).toBe('/srv/writ');
    expect(writHome({ WRIT_DATA_DIR: '/old', HOME: '/home/u' }, 'linux')).toBe('/old');
    expect(writHome({ HOME: '/home/u' }, 'linux')).toBe('/home/u/.local/share/writ');
    expect(writHome({ HOME: '/home/u', XDG_DATA_HOME: '/data' }, 'linux')).toBe('/data/writ');
    // A relative XDG_DATA_HOME is invalid under the XDG spec: it would depend on the cwd.
    expect(writHome({ HOME: '/home/u', XDG_DATA_HOME: 'data' }, 'linux')).toBe('/home/u/.local/share/writ');
    expect(writHome({ HOME: '/Users/u' }, 'darwin')).toBe('/Users/u/Library/Application Support/writ');
    expect(writHome({ HOME: '', WRIT_HOME: '' }, 'linux')).not.toBe(process.cwd());
  });

  it('places config paths written $WRIT_HOME/… in it, and others beside the config file', () => {
    const home = () => '/srv/writ';
    expect(configPath('$WRIT_HOME/grant-key.pem', '/etc/writ', home)).toBe('/srv/writ/grant-key.pem');
    expect(configPath('$WRIT_HOME', '/etc/writ', home)).toBe('/srv/writ');
    expect(configPath('keys/grant.pem', '/etc/writ', home)).toBe('/etc/writ/keys/grant.pem');
    expect(configPath('/abs/grant.pem', '/etc/writ', home)).toBe('/abs/grant.pem');
    // Only the whole first segment: `$WRIT_HOMEX` is an ordinary relative name.
    expect(configPath('$WRIT_HOMEX/k.pem', '/etc/writ', home)).toBe('/etc/writ/$WRIT_HOMEX/k.pem');
  });
});
