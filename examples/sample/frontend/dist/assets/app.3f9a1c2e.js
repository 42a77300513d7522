fetch('/api/v1/version').then(r => r.text()).then(v => { document.getElementById('version').textContent = 'backend ' + v; });
