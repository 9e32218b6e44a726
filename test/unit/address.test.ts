import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { announcedIp } from '../../src/config/address.js';

describe('announcedIp', () => {
  it('is the listen address when that names one address', () => {
    assert.equal(announcedIp('127.0.0.1', '10.0.0.5', false), '127.0.0.1');
    assert.equal(announcedIp('192.168.1.7', '10.0.0.5', false), '192.168.1.7');
    assert.equal(announcedIp('::1', '10.0.0.5', false), '::1');
  });

  it('is the default for a wildcard listen address or a host name', () => {
    assert.equal(announcedIp('0.0.0.0', '10.0.0.5', false), '10.0.0.5');
    assert.equal(announcedIp('::', '10.0.0.5', false), '10.0.0.5');
    assert.equal(announcedIp('0:0:0:0:0:0:0:0', '10.0.0.5', false), '10.0.0.5');
    assert.equal(announcedIp('localhost', '10.0.0.5', false), '10.0.0.5');
  });

  it('is --ip whenever it was given', () => {
    assert.equal(announcedIp('127.0.0.1', '10.0.0.5', true), '10.0.0.5');
    assert.equal(announcedIp('0.0.0.0', '10.0.0.5', true), '10.0.0.5');
  });
});
